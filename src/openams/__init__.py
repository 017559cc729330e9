"""openams: a self-hostable media services platform speaking the Azure Media Services v2 protocols."""

__version__ = "0.1.0"
