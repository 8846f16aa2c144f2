"""Structure from motion from the matches: one keypoint set per image (keypoints), its exports to COLMAP
(colmap) and hloc (hloc), and the mapping of a database (reconstruct)."""
