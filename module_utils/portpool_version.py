# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool release: scripts/build_collection.py writes it into galaxy.yml."""

from __future__ import annotations

VERSION = "0.2.0"
