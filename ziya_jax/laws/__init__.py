"""Data-centric scaling laws (Ziya2 v2 section 7): data attributes, similarity, fit and prediction."""
