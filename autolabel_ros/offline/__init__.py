"""The offline autolabeling job behind ``autolabel-bag``: per-frame persistence and resume
(:mod:`.store`), model-holding workers (:mod:`.worker`), local-process and Ray execution
(:mod:`.parallel`) and the orchestration that assembles the outputs (:mod:`.job`)."""
