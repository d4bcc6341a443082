"""Raw text, images and audio -> embedding files that `wmfactory train` reads (`wmfactory encode`), and predicted
vectors -> the nearest items of a reference bank (`wmfactory retrieve`). Encoders come from `transformers` (and
sentence-transformers); reading images and audio needs `pip install 'wmfactory[encode]'`."""
