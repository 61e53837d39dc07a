"""Publishing synchronised audio and video, and the frame clock that feeds it."""
