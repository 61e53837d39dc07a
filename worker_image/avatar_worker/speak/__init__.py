"""Speech asked for over REST (#23): the session's `spec.speech` tasks, spoken one at a time in
seq order with a TTS engine, through the same speech buffer as agent audio. `plan.py` decides
(pure), `executor.py` speaks and reports, `engines.py` makes the engine a voice needs."""
