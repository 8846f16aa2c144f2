"""Structure from motion from the matches: one keypoint set per image (keypoints.py)."""
