"""``segkit report``: score a run or a folder of predicted masks against a dataset split.

``tables`` holds the pure rows and numbers, ``plots`` the matplotlib pictures, ``html``
the self-contained page, ``stage`` the file shell.
"""
