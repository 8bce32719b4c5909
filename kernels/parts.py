"""DensePose's part labels, defined once for the kernels, the colormaps and the pipeline's value types.

A part label is a channel index of the fine segmentation: 0 is the background, 1..24 are the body
parts. The coarse segmentation has two channels: background and person.
"""

N_PART_LABELS = 25  # part labels 0..24
N_FINE_CHANNELS = N_PART_LABELS  # the fine segmentation (and U, V) has one channel per part label
N_COARSE_CHANNELS = 2  # background, person
