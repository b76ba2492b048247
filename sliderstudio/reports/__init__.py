"""Reports on a trained adapter (`sliderstudio report`): its metadata, calibration, interference
between sliders and, for the toy world, the measured quality sweep.
"""
