"""SDFLabel's curriculum: autolabel unlabeled logs, keep verified labels of the current difficulty, render
their NOCS targets, fine-tune the CSS network, evaluate, loop (``autolabel-curriculum``)."""
