"""Speech inputs and the speech buffer."""
