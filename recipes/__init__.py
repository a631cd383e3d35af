"""Scripts reproducing the seed papers' runs (see README, "Recipes")."""
