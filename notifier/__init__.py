"""A Redis pub/sub backplane for Django Channels: watermark notifications, wire v1."""
