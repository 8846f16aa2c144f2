"""In-house fine-tuning from a folder of photos: `python -m data.inhouse prepare` (prepare.py) builds the
dataset from structure from motion or labelled correspondences (labels.py); dataset.py reads it."""
