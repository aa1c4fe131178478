"""Default option values, in a module that imports nothing.

The command line shows these in ``--help``, so declaring its options must not load
the stage modules (numpy, scipy, PIL) that also use them; those import them from here.
"""

#: PIL's own decompression-bomb error threshold; ``--max-pixels`` overrides it.
DEFAULT_MAX_PIXELS = 2 * 89_478_485
#: Share of the images ``segkit split`` puts in the test split.
DEFAULT_TEST = 0.1
#: Bits of the perceptual image hash.
HASH_BITS = 64
#: Hamming distance (of 64 bits) at or below which two images count as near-duplicates.
DEFAULT_MAX_DISTANCE = 4
#: beta of the effective-number class-weighting scheme.
DEFAULT_BETA = 0.9999
#: Height and width (pixels) of the U-Net border term.
DEFAULT_W0 = 10.0
DEFAULT_SIGMA = 5.0
#: ``segkit demo``: training budget (minutes; with the other stages it stays under 5
#: minutes on 2 CPU cores whatever the machine's load, docs/benchmarks.md), model, crop.
DEMO_MINUTES = 3.0
DEMO_MODEL = "unet-tiny"
DEMO_CROP = 64
