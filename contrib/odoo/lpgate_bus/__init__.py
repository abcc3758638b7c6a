# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
from . import controllers
