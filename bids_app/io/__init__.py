"""Disk I/O: BIDS discovery, GIFTI/CIFTI/confounds/meshes in, derivatives out."""
