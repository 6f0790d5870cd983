"""2D detectors that produce box prompts (OpenCV-DNN SSD, torchvision)."""
