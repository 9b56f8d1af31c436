"""Analysis of chats: statistics, EI labelling and metrics, persona consistency, dataset comparison, BERTScore."""
