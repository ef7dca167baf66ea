"""Running jobs on a schedule in any number of scheduler processes, each tick exactly once."""
