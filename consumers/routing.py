from django.urls import path

from consumers.hub import HubConsumer

websocket_urlpatterns = [path("ws/", HubConsumer.as_asgi())]
