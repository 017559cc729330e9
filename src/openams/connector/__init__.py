"""The Azure Media Services Connector API ("upload, encode, stream"), spec §6.

`app` is the HTTP surface (mounted at `/connector/api/…` on the API listener); `videos` composes
the Connector's operations out of entity operations; `formats` is the static Formats list.
"""
