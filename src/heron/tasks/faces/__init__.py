"""Face verification and one-shot recognition: embeddings, losses, thresholds, enrolment, liveness."""
