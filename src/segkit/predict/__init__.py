"""``segkit predict``: masks, overlays and labelme pre-annotations for new images.

``polygons`` is the pure core (class mask → labelme shapes); ``stage`` reads images,
runs the model through :mod:`segkit.inference` and writes the output folder.
"""
