from tests.answers._index import blog_index, til_index

__all__ = ["blog_index", "til_index"]
