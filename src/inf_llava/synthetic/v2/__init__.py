"""Task v2 of the ablation (issue 14): band-limited detail, kinds certified per input, and the paper's variants."""
