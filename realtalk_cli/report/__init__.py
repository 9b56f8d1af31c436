"""Saved runs -> leaderboards with confidence intervals, paired comparisons, the HTML explorer and terminal views."""
