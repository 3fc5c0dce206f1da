"""One module per benchmark of the paper's Table 1."""
