"""Studies that measure the seed papers' claims with keras_slim (see
studies/fashion_mnist/). Apart from the paper recipes: a study may import
the library and the recipes' shared code; nothing imports a study."""
