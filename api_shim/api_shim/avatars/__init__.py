"""Avatars: a portrait photo in (file, URL or data URI), a validated, aligned JPEG and an
`Avatar` resource out.

- `decode` turns bytes into pixels, refusing non-images, truncated files and decompression bombs;
- `fetch` downloads a public URL without reaching into the cluster or the cloud metadata service;
- `faces` is the detector interface and the one-prominent-face rule; `blazeface` is the default
  detector (weights from a registry package, offline), `insight` the operator's insightface pack;
- `align` levels the eyes, frames and resizes the portrait and encodes the JPEG;
- `pipeline` strings those together off the event loop; `store` keeps the JPEG;
- `upload` parses the POST body (multipart or JSON) for the route, as a FastAPI dependency;
- `service` makes, reads, lists and deletes the `Avatar` resources.
"""
