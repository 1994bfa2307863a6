"""The 11-class face-parsing label set (Helen's classes and order), used everywhere.

Classes (docs/design.md §2)::

    0 background  1 skin  2 left brow  3 right brow  4 left eye  5 right eye  6 nose
    7 upper lip   8 inner mouth / teeth  9 lower lip  10 hair

"Left" means image-left (the subject's right eye is class 4); a horizontal flip of an image
must swap 2↔3 and 4↔5. :data:`PART_CLASSES` are the 8 key parts of the paper's local
structural loss L_s (docs/design.md §4).
"""

from __future__ import annotations

CLASS_NAMES = (
    "background",
    "skin",
    "left_brow",
    "right_brow",
    "left_eye",
    "right_eye",
    "nose",
    "upper_lip",
    "inner_mouth",
    "lower_lip",
    "hair",
)
NUM_CLASSES = len(CLASS_NAMES)
BACKGROUND, SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE = 0, 1, 2, 3, 4, 5
NOSE, UPPER_LIP, INNER_MOUTH, LOWER_LIP, HAIR = 6, 7, 8, 9, 10
PART_CLASSES = (LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, UPPER_LIP, INNER_MOUTH, LOWER_LIP)
