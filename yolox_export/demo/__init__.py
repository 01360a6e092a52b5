"""Training-curve demo: a synthetic detection data set, a small YOLOX-style detector, and training runs that swap
the eager reference loss for the static module and compare the curves step by step."""
