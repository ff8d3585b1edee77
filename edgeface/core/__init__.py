"""The torch-free core every other layer builds on: the model card, the target table, typed
configuration and device profiles, image decoding, face detection (YuNet) and its cache,
alignment, preprocessing, paths, hashing and timing."""
