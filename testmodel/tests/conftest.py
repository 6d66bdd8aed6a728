import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach for the network
