from django.urls import path

from counters import views

urlpatterns = [
    path("counters/<slug:name>", views.counter),
    path("counters/<slug:name>/increment", views.increment),
]
