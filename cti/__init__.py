"""Call-center CTI and IVR server driving Asterisk over ARI."""

__version__ = "0.1.0"
