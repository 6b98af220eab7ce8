# pytest puts this directory on sys.path, so the SDK's tests import
# `scorehost_guest` from here without installing it.
