"""The data layer: episodes on disk and the streams training and evaluation read.

- ``worldsim.data.dataset``: the dataset folder (manifest + checksummed shards), written atomically by
  ``DatasetWriter``, read by ``EpisodeDataset``, checked by ``verify_dataset``.
- ``worldsim.data.stream``: ``Stream``, episodes laid end to end one row per frame, built from a
  dataset (``EpisodeDataset.stream``) or from episodes in memory (``stream_from_episodes``).
- ``worldsim.data.gap``: frames since each cell's place was last seen, through the codec interface.

Import the module that holds a name (``from worldsim.data.dataset import EpisodeDataset``).
"""
