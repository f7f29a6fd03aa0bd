"""What acts in a dream or real env: SB3 glue, planners, policy evaluation."""
