"""Text to speech: engines behind one small interface (`engine.py`) that stream int16 PCM as they
synthesise, so the first audio can play before the whole text is spoken. `espeak.py` is the
offline engine (Debian's espeak-ng, sentence by sentence); `openai_compatible.py` calls any
server with OpenAI's `POST /v1/audio/speech`. Which engine speaks a voice is the voice
catalogue's word (`avatar_crds.voices`)."""
