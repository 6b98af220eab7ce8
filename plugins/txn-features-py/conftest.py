# In this repository the SDK is not installed: its tests find it in guest-sdk/python.
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "guest-sdk" / "python"))
