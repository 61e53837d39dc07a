# Named as the other avatar plugins name theirs (SimliException, TavusException, AnamException).
class FacecastException(Exception):  # noqa: N818
    """The Facecast avatar could not be started: missing settings, or the API refused."""
