"""Model files densevid generates for itself: the hub-like real-cost stand-in DensePose R-CNN (``standin_rcnn``)."""
