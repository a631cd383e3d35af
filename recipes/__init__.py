"""Scripts reproducing the seed papers' runs (see docs/recipes.md)."""
