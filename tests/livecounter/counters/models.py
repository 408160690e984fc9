from django.db import models


class Counter(models.Model):
    name = models.SlugField(unique=True)
    value = models.BigIntegerField(default=0)
