#!/bin/sh
# No-op coverage tool (offline stub).
exit 0
