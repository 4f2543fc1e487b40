"""One module per stage of the data path: URIs -> bytes -> pixels -> model outputs -> rows -> Parquet."""
