"""Texts the encoder tests embed: short and long, one empty (imported as `encoder_texts`, tests/ on sys.path)."""

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the park with a big red ball and the sun was out over the green tree",
    "gene",
    "patients with cancer in this study had a small risk",
    "",
    "python read file line by line with a loop",
]
