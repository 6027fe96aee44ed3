"""The street-sign clip (real bikes.mp4 frames with words drawn on them) lives with the other samples."""

from pipeline.sample_signs import DEFAULT_WORDS, TextSpan, draw_sign, make_text_clip

__all__ = ["DEFAULT_WORDS", "TextSpan", "draw_sign", "make_text_clip"]
