"""``segkit run``: the whole chain on a labelme folder, resumable, from one configuration.

``config`` resolves the options of every stage (defaults < TOML file < command line) and
reads and writes ``segkit-run.toml``; ``plan`` says which stages are stale and why;
``runner`` calls each stage's public function in turn. ``segkit.run`` is
:func:`segkit.pipeline.runner.run`.
"""
