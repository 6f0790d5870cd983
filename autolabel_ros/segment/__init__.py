"""Promptable segmenters (SAM family): prompts -> instance masks."""
