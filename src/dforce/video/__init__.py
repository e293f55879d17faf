"""Video: moving-sprite data, rollouts, keyframe interpolation, metrics and writers."""
