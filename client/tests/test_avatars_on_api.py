"""Avatars through the client, over real HTTP to the real API process: real photographs
(scikit-image's astronaut; its coffee cup has no face) through the real face detector."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from skimage import data

import facecast
from client.tests.harness import RunningApi, session_request
from testbed.tenants import new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


def _jpeg(name: str, size: int | None = None) -> bytes:
    pixels: npt.NDArray[np.uint8] = getattr(data, name)()  # scikit-image's loaders are untyped
    image = Image.fromarray(pixels)
    if size is not None:
        image = image.resize((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


PORTRAIT = _jpeg("astronaut", 512)
NO_FACE = _jpeg("coffee")


async def test_upload_a_file_get_list_and_delete(api: RunningApi, tmp_path: Path) -> None:
    acme = await new_tenant(api.kube)
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(PORTRAIT)
    async with facecast.AsyncFacecast(api_key=acme.key, base_url=api.url) as fc:
        uploaded = await fc.avatars.create(file=path, display_name="Astronaut")
        assert isinstance(uploaded, facecast.Avatar)
        assert uploaded.id.startswith("av_")
        assert (uploaded.owned, uploaded.visibility) == (True, "tenant")
        assert uploaded.display_name == "Astronaut"
        assert uploaded.image.width <= 800
        assert len(uploaded.face.landmarks) >= 5
        from_bytes = await fc.avatars.create(file=PORTRAIT, visibility="public")
        assert from_bytes.visibility == "public"

        assert (await fc.avatars.get(uploaded.id)).image.sha256 == uploaded.image.sha256
        page = await fc.avatars.list(limit=1)
        assert page.has_more
        assert [a.id for a in page.data] == [from_bytes.id]  # newest first
        mine = {a.id async for a in fc.avatars.list_all(page_size=1) if a.owned}
        assert mine == {uploaded.id, from_bytes.id}

        deleted = await fc.avatars.delete(uploaded.id)
        assert deleted.id == uploaded.id
        with pytest.raises(facecast.NotFoundError) as gone:
            await fc.avatars.get(uploaded.id)
        assert gone.value.code == "avatar_not_found"


async def test_upload_as_base64_and_refusals(api: RunningApi) -> None:
    """The JSON forms of the upload, with the sync client (the API is another process)."""
    acme = await new_tenant(api.kube)
    data_uri = "data:image/jpeg;base64," + base64.b64encode(PORTRAIT).decode()
    with facecast.Facecast(api_key=acme.key, base_url=api.url) as fc:
        avatar = fc.avatars.create(image_base64=data_uri)
        assert avatar.owned

        with pytest.raises(facecast.InvalidRequestError) as faceless:
            fc.avatars.create(file=NO_FACE)
        assert (faceless.value.code, faceless.value.param) == ("no_face_detected", "file")

        with pytest.raises(facecast.InvalidRequestError) as private:
            fc.avatars.create(image_url="http://127.0.0.1/portrait.jpg")
        assert (private.value.code, private.value.param) == ("image_url_forbidden", "image_url")

        with pytest.raises(ValueError, match="exactly one"):
            fc.avatars.create(file=PORTRAIT, image_url="https://example.com/a.jpg")

        session = fc.sessions.create(session_request(avatar.id))
        with pytest.raises(facecast.ConflictError) as in_use:
            fc.avatars.delete(avatar.id)
        assert in_use.value.code == "avatar_in_use"
        fc.sessions.cancel(session.id)
