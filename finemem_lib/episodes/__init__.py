"""Episodes: QA over a built memory, rollouts, baselines and the credit measure."""
