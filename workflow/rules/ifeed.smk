# rules for the IFEED ingestion stage
